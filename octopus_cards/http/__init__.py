"""The HTTP pipeline between a request and its handler: security, validation, errors, rate
limits, observability and the middleware around connexion. Handlers import from here; the domain
(octopus_cards.models) never does."""
