"""Subscribers kept in the database: the admin's commands (`digest subscribers`) and CSV."""
