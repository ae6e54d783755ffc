"""Shapes of the gateway's keys and panel (the /v1/ endpoints speak OpenAI's shapes: serving.gateway)."""

from rest_framework import serializers

from ..dispatch.serializers import DispatchTokenSerializer


class GatewayKeySerializer(DispatchTokenSerializer):
    hint = serializers.CharField(help_text="The key's first eight characters, to tell keys apart.")


class GatewayKeyCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The key's id (DELETE .../gateway/keys/{id}/ revokes it).")
    key = serializers.CharField(help_text="The gateway key (`Authorization: Bearer <key>` on /v1/). Shown once.")
    hint = serializers.CharField(help_text="The key's first eight characters, as the list shows them.")


class GatewayPanelSerializer(serializers.Serializer):
    cluster = serializers.IntegerField()
    adopted_plan = serializers.IntegerField(allow_null=True)
    base_path = serializers.CharField(help_text="Where the gateway answers on this service's origin: the OpenAI "
                                                "base URL is <origin><base_path>.")
    models = serializers.ListField(child=serializers.CharField(),
                                   help_text="Model names the gateway serves for this cluster (the `model` field).")
    error = serializers.CharField(allow_null=True, help_text="Why no model is served, if none is.")
    keys = serializers.IntegerField(help_text="Gateway keys of the cluster not revoked.")
