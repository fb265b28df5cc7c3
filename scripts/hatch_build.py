"""Build hook (pyproject.toml): a wheel carries conf/ inside the package, as grasp/conf, where
grasp.config finds it once installed. Editable installs read the checkout's conf/ directly."""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ConfigsInPackage(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "standard":
            build_data["force_include"]["conf"] = "grasp/conf"
