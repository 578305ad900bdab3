"""Where new instances go: references cut from the support set, inpaint mask shapes, the label / appearance /
orientation priors and the plan a folder records (``paintseg place``)."""
