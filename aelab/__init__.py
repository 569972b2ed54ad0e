"""aelab: a workbench for image autoencoders.

    import aelab
    run = aelab.train("configs/deep-fcn.yaml")        # -> a Run folder
    run = aelab.load_run("runs/deep-fcn")
    codes = run.encode(images)                          # uint8 N×H×W×C in, codes out
    images = run.decode(codes)
    edited = aelab.edit(run, image, ["0*=2", "2+=5"])  # analyses are functions of a Run (aelab.latent)
"""

__version__ = "0.1.0"

from aelab.config import Config, load_config  # noqa: E402
from aelab.data import ImageSet, Preprocess, load_images  # noqa: E402
from aelab.errors import AelabError  # noqa: E402
from aelab.latent import edit, interpolate, traverse  # noqa: E402
from aelab.models import create_model  # noqa: E402
from aelab.run import Run, load_run  # noqa: E402
from aelab.train import train  # noqa: E402

__all__ = ["AelabError", "Config", "ImageSet", "Preprocess", "Run", "create_model", "edit", "interpolate",
           "load_config", "load_images", "load_run", "traverse", "train", "__version__"]
