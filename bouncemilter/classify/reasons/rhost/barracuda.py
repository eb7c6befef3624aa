"""Barracuda Email Security Gateway / Essentials (*.barracudanetworks.com, *.ess.barracuda.com).

Barracuda's documented rejection texts (campus.barracuda.com "Barracuda Email Security Service
SMTP responses"; barracudacentral.org for its reputation block list).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="barracuda",
    hosts=("barracudanetworks.com", "barracuda.com", "cudamail.com", "barracudacentral.org"),
    rules=(
        _R("blocked", "barracuda reputation"),
        _R("blocked", "barracudacentral.org"),
        _R("blocked", ":blocked)"),
        _R("spamdetected", "message content rejected"),
        _R("spamdetected", ":spam)"),
        _R("virusdetected", "virus"),
        _R("policyviolation", "intent"),
        _R("userunknown", "user unknown"),
        _R("userunknown", "invalid recipient"),
    ),
)
