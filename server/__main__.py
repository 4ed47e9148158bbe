"""`python -m pgwarden.server`: the same as `pgwarden server`."""

from pgwarden.server.cli import server

if __name__ == "__main__":
    server(prog_name="python -m pgwarden.server")
