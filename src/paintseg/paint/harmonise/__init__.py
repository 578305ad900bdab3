"""Harmonisation: copy-paste composites re-coloured by a small UNet trained on the episode's own scenes.

``model`` (the :class:`Harmoniser` and its HARM folder), ``data`` (self-supervised pairs), ``train``
(``paintseg harmoniser train``) and ``backend`` (the ``harmonise`` painting backend).
"""
