"""Who is calling: users, teams, API tokens, and logging in through OAuth2."""
