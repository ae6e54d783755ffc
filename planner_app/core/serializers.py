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


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class WorkersCheckSerializer(CheckSerializer):
    alive = serializers.IntegerField(min_value=0, help_text="workers consuming the job queue that answered")


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(["ok", "unavailable"])
    database = CheckSerializer()
    broker = CheckSerializer()
    workers = WorkersCheckSerializer()
