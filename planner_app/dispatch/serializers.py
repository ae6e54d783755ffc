"""Shape of the dispatcher panel (the ASGI endpoints' shapes are in schema.py)."""

from rest_framework import serializers


class DispatcherPanelSerializer(serializers.Serializer):
    cluster = serializers.IntegerField()
    adopted_plan = serializers.IntegerField(allow_null=True)
    policy = serializers.CharField()
    state = serializers.DictField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    history = serializers.ListField(child=serializers.DictField())
    tokens = serializers.IntegerField()
    endpoints = serializers.DictField(child=serializers.CharField())
