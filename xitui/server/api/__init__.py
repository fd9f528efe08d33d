"""The API: Xinference's and OpenAI's routes, the request bodies they take, generation and structured
output on the server's side, the OpenAPI document and Prometheus' /metrics."""
