"""Array-agnostic bodies: written only against an Array-API namespace ``xp``."""
