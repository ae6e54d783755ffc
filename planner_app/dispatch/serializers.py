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


class DispatchTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    hint = serializers.CharField(help_text="The token's first six characters, to tell tokens apart.")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.SerializerMethodField()

    def get_active(self, obj) -> bool:
        return obj.revoked_at is None
