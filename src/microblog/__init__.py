"""A self-hostable microblog."""
