"""InfEdit: inversion-free image editing with natural language (DDCM + Unified Attention Control)."""
