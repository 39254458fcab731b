"""octopus-cards: a spec-first server for the Octopus Cards API."""

import warnings

# connexion imports starlette's test client at import time; that warning is for test code.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
