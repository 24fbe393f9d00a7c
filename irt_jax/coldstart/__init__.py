"""Cold start: abilities of new LLMs by MAP from a few answers, and which queries to ask (ability)."""
