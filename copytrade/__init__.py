"""Leaders, follows, the fan-out of leaders' fills to followers, leader statistics and profit share."""
