"""Server-rendered HTML pages of heldout: templates, a stylesheet and server-side SVG charts."""
