"""GraphQL API: SDL, Tartiflette engine behind a small executor, HTTP and WebSocket transports."""
