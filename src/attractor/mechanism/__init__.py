"""Where stability forms inside the network: depth use (``depth``), attention heads
(``attention``) and activation patching (``patch``) over the rollouts of a run."""
