"""Every write of copy trading: follow, unfollow, fan-out of leader executions, profit share."""
