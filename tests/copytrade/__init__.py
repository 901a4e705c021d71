"""Tests of copy trading (copytrade/): sizing followers' orders, profit share, leader statistics."""
