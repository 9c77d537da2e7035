// Anchor translation unit that owns the shared ATen precompiled header.
