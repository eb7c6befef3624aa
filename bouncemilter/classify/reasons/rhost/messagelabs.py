"""Symantec (Broadcom) Email Security.cloud, formerly MessageLabs (*.messagelabs.com).

Its documented SMTP error messages (support.broadcom.com "Email Security.cloud SMTP error
codes"; the messagelabs.com/support texts in its replies).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="messagelabs",
    hosts=("messagelabs.com", "symanteccloud.com"),
    rules=(
        _R("securityerror", "please turn on smtp authentication in your mail client"),
        # Address Registration Service: a recipient the customer has not registered
        _R("userunknown", "rejected", "", "542"),
        _R("userunknown", "invalid recipient"),
        _R("authfailure", "per it's spf record"),
        _R("blocked", "connection rejected by policy"),
        _R("blocked", "your ip address is listed"),
        _R("norelaying", "that domain isn't in my list of allowed rcpthosts"),
    ),
)
