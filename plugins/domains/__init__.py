"""Domain presets: ecommerce, news, video and social."""
