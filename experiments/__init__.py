"""The experiment files (``*.toml``) and their presets, shipped inside the wheel as
``jaxmem.experiments`` so that ``jaxmem run NAME`` finds them from an installed package."""
