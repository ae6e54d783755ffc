"""The gateway's engines, one module per kind (``petals``, ``openai``); each implements
``serving.gateway.engine.Engine``."""
