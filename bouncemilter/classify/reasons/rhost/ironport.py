"""Cisco Secure Email / IronPort (*.iphmx.com for the hosted service; on-premises IronPort).

The appliance's documented default SMTP responses (AsyncOS user guide: HAT policy responses,
LDAP accept query "#5.1.0 Address rejected", SenderBase reputation refusals).
"""

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="ironport",
    hosts=("iphmx.com", "ironport.com", "cisco.com"),
    rules=(
        _R("userunknown", "#5.1.0 address rejected", source="LDAP accept query: the recipient is not in the directory"),
        _R("userunknown", "5.1.0 address rejected", source="LDAP accept query"),
        _R("badreputation", "the sending mta's poor reputation", source="HAT: SenderBase reputation"),
        _R("blocked", "access denied", source="HAT REJECT default '554 Access Denied'"),
        _R("speeding", "too many recipients received this hour", source="HAT rate limit"),
        _R("toomanyconn", "too many concurrent smtp connections", source="HAT connection limit"),
        _R("mesgtoobig", "message size exceeds fixed maximum message size"),
        _R("systemerror", "temporary system error"),
    ),
)
