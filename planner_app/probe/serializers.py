"""Response shapes of the probe endpoints."""

from rest_framework import serializers


class ProbeReportAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    accepted = serializers.BooleanField()
