"""Reports: paper tables as data, the one table generator, the sweep-end Hydra callback, the leaderboard."""
