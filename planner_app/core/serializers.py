"""Request and response shapes of the sign-in endpoints."""

from __future__ import annotations

from rest_framework import serializers


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class UsernameSerializer(serializers.Serializer):
    username = serializers.CharField()


class MeSerializer(serializers.Serializer):
    username = serializers.CharField(allow_null=True, help_text="null when signed out")
