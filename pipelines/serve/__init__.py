"""`rvqaudio serve`: a local web page to generate music and speech, hear them as they are made, and round-trip
audio through the codec (gradio, from the `demo` extra).

    from pipelines.serve import serve
    serve(port=7860)                     # http://127.0.0.1:7860, the bundled models

Offline by design: gradio's telemetry and version check are off, the page loads nothing from the internet, and
it binds to 127.0.0.1 unless another host is named.
"""

from __future__ import annotations

import os
import tempfile

from .limits import MAX_DURATION, MAX_PROMPT_CHARS, MAX_UPLOAD_MB, MAX_UPLOAD_SECONDS, LimitError

__all__ = ["LimitError", "MAX_DURATION", "MAX_PROMPT_CHARS", "MAX_UPLOAD_MB", "MAX_UPLOAD_SECONDS", "serve"]

# Read by gradio when it is imported: no telemetry, no server-side rendering (it would start Node.js).
_GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SSR_MODE": "False", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}


def serve(host: str = "127.0.0.1", port: int = 7860, model_music: str | os.PathLike | None = None,
          model_speech: str | os.PathLike | None = None, codec: str | os.PathLike | None = None,
          block: bool = True):
    """Start the page at http://host:port and serve until interrupted (`block=False`: return the running gradio
    app, to `close()`). model_music / model_speech: self-contained LM folders (default: the bundled LMs);
    codec: the codec folder of the Codec tab (default: the bundled codec). Requests run one at a time per model.
    """
    for name, value in _GRADIO_ENV.items():
        os.environ.setdefault(name, value)
    from tokenizer.extras import import_extra

    import_extra("gradio", "demo", "rvqaudio serve")
    from .app import build_app
    from .models import load_models

    models = load_models(model_music, model_speech, codec)
    workdir = tempfile.mkdtemp(prefix="rvqaudio-serve-")
    app = build_app(models, workdir)
    app.queue(default_concurrency_limit=1, max_size=16)
    print(f"rvqaudio serve: http://{host}:{port} (Ctrl+C stops it)", flush=True)
    app.launch(server_name=host, server_port=port, max_file_size=f"{MAX_UPLOAD_MB}mb", ssr_mode=False,
               mcp_server=False, enable_monitoring=False, show_error=True, quiet=True, inbrowser=False,
               share=False, prevent_thread_lock=not block, allowed_paths=[workdir], footer_links=[])
    return app
