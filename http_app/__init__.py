"""sol-stake web side: aiohttp + Tartiflette GraphQL, REST health/cache routes, Prometheus metrics."""
