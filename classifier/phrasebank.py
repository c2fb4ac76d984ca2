"""Training-time wording knowledge: how each failure is commonly phrased, and interchangeable wordings.

Written by hand from general knowledge of MTA and provider bounce texts (not copied from the dev part of the
corpus), in several languages, so the model learns the concept rather than one MTA's sentence. The
perturbation used to *evaluate* robustness (perturb.py) uses a separate, disjoint table.
"""

from __future__ import annotations

# category -> (typical enhanced status codes, typical reply codes, stage, phrasings)
SEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "bad-mailbox": (
        ("5.1.1", "5.1.10", "5.1.6", "5.0.0"), ("550", "551", "553"), ("rcpt",),
        (
            "user unknown", "no such user here", "unknown recipient", "recipient not found",
            "mailbox not found", "mailbox unavailable", "no mailbox here by that name",
            "the email account that you tried to reach does not exist",
            "recipient address rejected: user unknown in virtual mailbox table",
            "invalid recipient", "this user doesn't have an account", "address does not exist",
            "recipient not found by smtp address lookup", "no such recipient", "unknown local part",
            "the recipient's address is not valid", "user has moved, no forwarding address",
            "utilisateur inconnu", "adresse du destinataire inconnue", "benutzer unbekannt",
            "unbekannter empfänger", "usuario desconocido", "el destinatario no existe",
            "utente sconosciuto", "宛先のメールアドレスが見つかりません", "存在しないユーザー",
        ),
    ),
    "inactive-mailbox": (
        ("5.2.1", "5.0.0"), ("550", "554"), ("rcpt",),
        (
            "the email account that you tried to reach is disabled", "account disabled",
            "mailbox is inactive", "this account has been suspended", "mailbox disabled, not accepting messages",
            "account is frozen", "the mailbox has been deactivated due to inactivity", "account expired",
            "user account is locked", "compte désactivé", "konto deaktiviert", "cuenta desactivada",
            "このアカウントは停止されています",
        ),
    ),
    "bad-domain": (
        ("5.1.2", "5.4.4", "5.0.0"), ("550", "554", ""), ("connect", "unknown"),
        (
            "host unknown", "domain not found", "no mx record found for domain", "host or domain name not found",
            "name service error for name", "unrouteable address", "domain does not exist",
            "unrouteable mail domain", "the domain has no mail exchanger", "nxdomain", "bad destination host",
            "domain does not accept mail", "null mx", "hôte inconnu", "domaine introuvable",
            "domain nicht gefunden", "dominio no encontrado", "ドメインが存在しません",
        ),
    ),
    "quota-issues": (
        ("5.2.2", "4.2.2", "5.2.0"), ("552", "452", "550"), ("rcpt", "data"),
        (
            "mailbox full", "mailbox is full", "quota exceeded", "over quota", "user is over quota",
            "the email account that you tried to reach is over quota", "storage quota exceeded",
            "mailbox size limit exceeded", "insufficient storage space", "disk quota exceeded",
            "the recipient's mailbox is full and can't accept messages now", "not enough space in mailbox",
            "boîte pleine", "boite du destinataire pleine", "postfach voll", "speicherplatz überschritten",
            "buzón lleno", "casella piena", "メールボックスがいっぱいです", "容量超過",
        ),
    ),
    "message-too-large": (
        ("5.3.4", "5.2.3", "5.2.2"), ("552", "554", "523"), ("data",),
        (
            "message size exceeds fixed maximum message size", "message too large", "message is too big",
            "your message exceeded the size limit", "message size exceeds the limit for this recipient",
            "message length exceeds administrative limit", "mail size limit exceeded", "size limit exceeded",
            "message rejected: too large", "message trop volumineux", "nachricht zu groß", "mensaje demasiado grande",
            "メールサイズが大きすぎます",
        ),
    ),
    "spam-related": (
        ("5.7.1", "5.6.0", "5.7.0"), ("550", "554"), ("data",),
        (
            "message rejected as spam", "this message was classified as spam", "spam detected",
            "our system has detected that this message is likely unsolicited mail",
            "message scored as spam", "rejected by content filter: spam", "suspected spam",
            "message looks like spam", "high spam probability", "bulk mail rejected",
            "mail refusé: spam", "als spam erkannt", "detectado como spam", "迷惑メールと判定されました",
        ),
    ),
    "reputation-blocked": (
        ("5.7.1", "5.7.606", "4.7.0", "5.7.0"), ("554", "550", "421"), ("connect", "rcpt"),
        (
            "client host blocked using spamhaus", "your ip address is listed on a blocklist",
            "blocked by dnsbl", "connection refused due to poor reputation", "access denied, banned sending ip",
            "sending ip has poor reputation", "connection rejected",
            "your host is blocked", "ip address blacklisted", "rejected because the sending mta is listed",
            "refused to talk to me", "mail from your ip is temporarily deferred because of its reputation",
            "adresse ip bloquée", "ip auf sperrliste", "ip bloqueada",
            "送信元ipアドレスがブロックされています",
        ),
    ),
    "auth-security": (
        ("5.7.26", "5.7.25", "5.7.1", "5.7.509", "5.7.0", "5.7.27"), ("550", "554", "530"), ("data", "mail"),
        (
            "spf check failed", "dmarc policy rejection", "message failed dkim verification",
            "unauthenticated email is not accepted", "sender is unauthenticated, authenticate with spf or dkim",
            "the ip you're using to send mail is not authorized", "reverse dns lookup failed",
            "ptr record required", "the sending ip does not have a ptr record", "tls required",
            "must issue a starttls command first", "authentication required", "sender domain fails dmarc",
            "encryption required for this recipient", "échec spf", "spf-prüfung fehlgeschlagen",
            "fallo de autenticación spf", "送信ドメイン認証に失敗しました",
        ),
    ),
    "policy-related": (
        ("5.7.1", "5.7.0", "5.2.1", "5.0.0"), ("550", "554"), ("data", "rcpt"),
        (
            "message rejected due to local policy", "rejected for policy reasons", "local policy violation",
            "message filtered", "blocked by recipient's filter", "delivery not authorized, message refused",
            "recipient has blocked this sender", "message not accepted for policy reasons",
            "the recipient is on the suppression list", "mail rejected by administrative rules",
            "sender not permitted by recipient", "refusé par la politique locale", "richtlinienverstoß",
            "rechazado por política", "受信拒否設定により拒否されました",
        ),
    ),
    "content-related": (
        ("5.6.0", "5.6.1", "5.7.1"), ("554", "550"), ("data",),
        (
            "message content rejected", "invalid message format", "message not rfc 5322 compliant",
            "duplicate header", "malformed mime", "bad header syntax", "attachment type not allowed",
            "messages with multiple addresses in from are not accepted", "8bit data not accepted",
            "line too long", "contenu non conforme", "ungültiges nachrichtenformat", "formato de mensaje no válido",
        ),
    ),
    "virus-related": (
        ("5.7.1", "5.7.0"), ("554", "550"), ("data",),
        (
            "virus detected", "message contains a virus", "infected attachment", "malware found in message",
            "rejected: message contains malicious content", "virus found, message rejected",
            "virus détecté", "virus gefunden", "virus detectado", "ウイルスが検出されました",
        ),
    ),
    "rate-limited": (
        ("4.7.0", "4.7.1", "4.2.1", "5.7.1"), ("421", "450", "451", "550"), ("connect", "rcpt", "mail"),
        (
            "too many connections", "rate limit exceeded", "too many messages, slow down",
            "receiving mail at a rate that prevents additional messages from being delivered",
            "connection frequency limited", "too many recipients", "sending rate exceeded, try again later",
            "throttled", "exceeded the maximum number of messages per hour", "too many concurrent sessions",
            "trop de connexions", "zu viele verbindungen", "demasiadas conexiones", "送信数の上限を超えました",
        ),
    ),
    "invalid-sender": (
        ("5.1.8", "5.1.7", "5.7.1", "5.1.0"), ("553", "501", "550"), ("mail",),
        (
            "sender address rejected", "domain of sender address does not exist", "invalid sender",
            "sender verify failed", "bad sender address syntax", "sender not allowed", "you are not allowed to post",
            "unknown sender", "sender address is not verified", "return address invalid",
            "expéditeur refusé", "absender abgelehnt", "remitente rechazado", "送信者アドレスが拒否されました",
        ),
    ),
    "routing-connection": (
        ("4.4.1", "5.4.6", "4.4.0", "5.7.1", "5.4.0"), ("554", "550", "421", ""), ("connect", "unknown"),
        (
            "connection timed out", "no route to host", "connection refused", "relay access denied",
            "relaying denied", "too many hops", "mail loop detected", "network is unreachable",
            "unable to connect to remote host", "lost connection with host", "we do not relay",
            "connexion refusée", "verbindung abgelehnt", "conexión rechazada", "接続できませんでした",
        ),
    ),
    "message-expired": (
        ("4.4.7", "5.4.7", "4.4.2"), ("", "421"), ("unknown", "connect"),
        (
            "message expired", "delivery time expired", "retry timeout exceeded",
            "could not be delivered for 5 days, giving up", "message has been in the queue too long",
            "could not deliver within the retry period", "delivery attempts will stop", "gave up after multiple retries",
            "message délai dépassé", "zustellfrist überschritten", "tiempo de entrega agotado",
            "配送期限切れ",
        ),
    ),
    "system-error": (
        ("4.3.0", "5.3.0", "4.2.0", "5.5.1", "5.5.0"), ("451", "554", "503", "500"), ("data", "mail", "rcpt"),
        (
            "local error in processing", "internal server error", "temporary system problem",
            "requested action aborted: error in processing", "improper sequence of commands",
            "command not recognized", "transaction failed", "mail system configuration error",
            "server busy, try again later", "syntax error", "erreur système", "systemfehler",
            "error del sistema", "システムエラー",
        ),
    ),
}

# Interchangeable wordings for training-time paraphrase. Every entry maps to alternatives of the same meaning.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "user": ("recipient", "account", "addressee", "mailbox"),
    "unknown": ("not found", "does not exist", "invalid", "not known"),
    "mailbox": ("mail box", "inbox", "account", "mail account"),
    "full": ("over quota", "out of space", "at capacity"),
    "quota": ("storage limit", "space limit", "allocation"),
    "exceeded": ("surpassed", "reached", "over"),
    "rejected": ("refused", "denied", "declined", "not accepted"),
    "blocked": ("denied", "banned", "refused", "listed"),
    "message": ("email", "mail", "e-mail"),
    "delivery": ("transmission", "transport"),
    "denied": ("rejected", "refused", "forbidden"),
    "domain": ("host", "domain name"),
    "host": ("server", "domain"),
    "too large": ("too big", "oversized", "exceeds the size limit"),
    "disabled": ("deactivated", "suspended", "closed", "inactive"),
    "expired": ("timed out", "too old", "retry period ended"),
    "policy": ("rules", "policies", "configuration"),
    "spam": ("junk", "unsolicited bulk mail", "ube"),
    "virus": ("malware", "infected content"),
    "sender": ("from address", "originator", "envelope sender"),
    "connection": ("session", "link"),
    "temporarily": ("for now", "at the moment"),
    "does not exist": ("is unknown", "was not found", "is not valid"),
    "not found": ("unknown", "missing", "nonexistent"),
    "error": ("failure", "problem", "fault"),
}

# Boilerplate that MTAs put around the reason; wrapping a reason in it teaches the model to ignore it.
WRAPPERS: tuple[str, ...] = (
    "{reason}",
    "host {host} said: {reply} {status} {reason} (in reply to {stage_cmd} command)",
    "remote host said: {reply} {status} {reason}",
    "smtp; {reply} {status} {reason}",
    "{reply}-{status} {reason}",
    "delivery to the following recipient failed permanently: technical details of permanent failure: {reason}",
    "{reply} {status} <{addr}>... {reason}",
    "this is the mail system. your message could not be delivered to one or more recipients. {reason}",
    "<{addr}>: {reason}",
    "error: {reason} ({status})",
)
STAGE_COMMANDS = {"rcpt": "RCPT TO", "data": "end of DATA", "mail": "MAIL FROM", "connect": "initial connection",
                  "unknown": "DATA"}
