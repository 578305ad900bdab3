"""The harmonise backend: copy-paste, then the harmoniser re-colours each pasted object to fit its new scene.

Candidate k is the copy-paste backend's candidate k (k = 0 as is, k > 0 a seeded flip/rot90 variant) passed
through the harmoniser at the window's native resolution (``colour="match"``: the colour-matched paste). The object mask stays the pasted silhouette; the pixels
changed are the silhouette (grown by the harmoniser's ``border``, 0 by default). With an untrained (zero-head) harmoniser the result
is the copy-paste candidate exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from paintseg.config import PaintConfig

from ..candidates import BackendOptions, Candidate, WindowJob
from ..copy_paste import CopyPasteBackend
from .model import load_harmoniser


class HarmoniseBackend:
    """Paste with :class:`CopyPasteBackend`, harmonise with a trained HARM folder (``paintseg harmoniser train``)."""

    name = "harmonise"

    def __init__(self, harmoniser: str | Path, device: str | None = None, colour: str = "none"):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.source = Path(harmoniser).resolve()
        self.model, self.config = load_harmoniser(harmoniser, self.device)
        self.paste = CopyPasteBackend(colour=colour)

    @classmethod
    def from_config(cls, source: str, paint: PaintConfig, options: BackendOptions) -> "HarmoniseBackend":
        return cls(source, colour=options.paste_colour)

    def settings(self) -> dict:
        return {"harmoniser": str(self.source)} | self.paste.settings()

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        out = []
        for job, pasted in zip(jobs, self.paste.paint(jobs, candidates)):
            cands = []
            for cand in pasted:
                image, region = self.model.harmonise(cand.image, cand.object_mask)
                region |= cand.paint_mask
                cands.append(Candidate(image=image, paint_mask=region, object_mask=cand.object_mask.copy()))
            out.append(cands)
        return out
