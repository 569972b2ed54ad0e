"""The latent explorer: a local web page to pick an image, move its code's elements and watch the decode.

``create_app(run_paths)`` builds the FastAPI app; ``aelab serve RUN ...`` runs it with uvicorn.
"""

from aelab.serve.app import create_app

__all__ = ["create_app"]
