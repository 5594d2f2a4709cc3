"""The unit's configuration: YAML loaded into typed, frozen objects and validated at load.

One module per section, each with the checks on its own fields; the loader builds and checks the
whole. Everything is importable from here, as it was when this was one module."""

from alprd.config.cameras import SOURCE_KINDS, CameraConfig, MotionConfig
from alprd.config.gps import SERIAL_BAUDS, GpsConfig, LocationConfig
from alprd.config.homeassistant import HomeAssistantConfig
from alprd.config.loader import _build, build, load_config, resolve_paths
from alprd.config.models import INPUT_WIDTH_RULE, ModelsConfig, is_input_width
from alprd.config.mqtt import MqttConfig, TlsConfig
from alprd.config.ops import HttpConfig, WatchdogConfig
from alprd.config.reads import FormatsConfig, HotlistConfig, TrackingConfig
from alprd.config.storage import PrivacyConfig, RetentionConfig, SpoolConfig
from alprd.config.unit import Config, LoggingConfig, validate

__all__ = [
    "INPUT_WIDTH_RULE",
    "SERIAL_BAUDS",
    "SOURCE_KINDS",
    "CameraConfig",
    "Config",
    "FormatsConfig",
    "GpsConfig",
    "HomeAssistantConfig",
    "HotlistConfig",
    "HttpConfig",
    "LocationConfig",
    "LoggingConfig",
    "ModelsConfig",
    "MotionConfig",
    "MqttConfig",
    "PrivacyConfig",
    "RetentionConfig",
    "SpoolConfig",
    "TlsConfig",
    "TrackingConfig",
    "WatchdogConfig",
    "_build",
    "build",
    "is_input_width",
    "load_config",
    "resolve_paths",
    "validate",
]
