"""World models behind one interface (see base.WorldModel)."""

from grasp.models.base import WorldModel

__all__ = ["WorldModel"]
