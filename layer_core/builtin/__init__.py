"""Plugins that ship inside layer-core, so whoever has the core has them (as llm ships its
default plugins). Each is registered through layer-core's own entry points in group `layer`, the
same path as any installed plugin: `layer plugins` lists it, and `LAYER_PLUGINS` or
`[plugins] load` can leave it out.

- `local` (`layer_core.builtin.local`): the embedded default, an offline placeholder model.
"""
