"""Decide what kind of report a message is: failure, delay, success, auto-reply, feedback or none.

Structure is trusted before wording: a delivery-status part's Action fields, then an ARF part, then who sent
it and what it says. Who sent it: the null envelope sender when the MTA gave the envelope (the strongest sign
a message without a delivery-status part has, shared only with auto-replies), a MAILER-DAEMON/postmaster From
or reverse path, a From with the null address, and only without an envelope the Return-Path field.
``Auto-Submitted: auto-replied`` is also set by real bounces, so it only makes an auto-reply when nothing
marks the message as a bounce.
"""

from __future__ import annotations

import re

from .addresses import is_bounce_sender, is_list_robot
from .envelope import EnvelopeFacts
from .extract import Finding
from .parts import Message, Parsed, content_type, header

BOUNCE_SUBJECT_RE = re.compile(
    r"(?i)undeliver|returned mail|delivery (?:status notification|failure|failed|has failed|problem|report)"
    r"|failure notice|mail delivery (?:failed|failure|system)|non.?delivery|could not be delivered"
    r"|mail system error|rejected|bounce|error|fail|not delivered|could not be sent|delivery notification"
    r"|unzustellbar|nicht zustellbar|non remis|no se puede entregar|エラー|不達|配信"
    r"|não entregue|non consegnat|no entregado|onbestelbaar|niedostarczon|nedoručiteln|не ?доставлен|退信|未送达"
)
# "was not delivered" in the languages whose reports name no code (Portuguese, Italian, Spanish, Dutch, Polish,
# Czech, Russian, Chinese, Korean).
NOT_DELIVERED_ELSEWHERE = (
    r"não (?:foi|pôde ser) entregue|non (?:è|e') stat[oa] consegnat|non (?:è|e') stato possibile consegnare"
    r"|no (?:ha podido ser|ha sido|pudo ser|fue|se ha) entregad|niet (?:worden )?afgeleverd"
    r"|nie (?:została?|zostało) dostarczon"
    r"|nebyla doručena|nemohla být doručena|не (?:было |может быть |удалось )?достав|无法投递|未能送达|投递失败"
    r"|전달되지 않았|전송되지 않았|배달되지"
)
# The *_BODY_RE patterns are matched against lower-cased text (parts.lowered): faster than IGNORECASE.
BOUNCE_BODY_RE = re.compile(
    r"could not be delivered|couldn'?t be delivered|undeliverable|delivery (?:to the following|has failed"
    r"|failed|to these recipients)|permanent(?:ly)? (?:error|fatal|failure)|unable to deliver|not be delivered"
    r"|(?:was|has|have) not been delivered|was not delivered|delivery failure|rejected|user unknown"
    r"|does not exist|no such user|mailbox (?:is )?full"
    r"|over quota|host unknown|message (?:was )?(?:bounced|returned)|failed recipient|giving up|transcript of session"
    r"|\b[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}|wasn'?t delivered|delivery problem|retry time|expired|"
    r"zugestellt|non remis|échec|失敗|できません|配信されませんでした|could not be sent|" + NOT_DELIVERED_ELSEWHERE
)
# Wording only delivery reports use (a subset of BOUNCE_BODY_RE, or an SMTP reply with an enhanced code).
REPORT_BODY_RE = re.compile(
    r"could(?: not|n'?t) be delivered|undeliverable|delivery (?:to the following|has failed|failed)"
    r"|permanent(?:ly)? (?:error|fatal|failure)|unable to deliver|(?:was|has|have) not been delivered"
    r"|was not delivered|could not be sent|transcript of session"
    r"|\b[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}|failed recipient|mail delivery|returned mail"
    r"|配信されませんでした|送信できませんでした|" + NOT_DELIVERED_ELSEWHERE
)
# A mailing list's refusal of a post (matched only in notices from a list's own addresses, see detect_kind).
LIST_REFUSAL_RE = re.compile(
    r"not allowed to post|not a member of|(?:was|been) (?:automatically )?(?:rejected|denied|refused)"
    r"|not (?:been )?distributed|unable to be delivered to the list|a été rejeté|n'a pas été (?:diffusé|distribué)"
    r"|abgelehnt|rechazad|rifiutat|rejeitad|geweigerd|niet verspreid|não foi distribuíd|拒否されました|投稿権限"
)
# A list's notice to a member that mail to the member's own address bounced (mlmmj's "Some messages to you could
# not be delivered"): it reports on the reader's mailbox, not on a post of theirs, so it is no failure report.
OWN_MAILBOX_NOTICE_RE = re.compile(
    r"(?:messages?|mails?|e-?mails?) (?:sent )?to you (?:could not|couldn't|were not|was not|have not been) "
    r"(?:be )?delivered"
)
DELAY_BODY_RE = re.compile(
    r"will (?:continue|keep) (?:trying|to try|retrying)|still (?:trying|being retried)|has been delayed"
    r"|delivery (?:is )?delayed|not yet been delivered|will retry|will be retried|attempts will continue"
    r"|warning: message still undelivered"
)
# A filter's digest of the mail it holds for the reader ("Quarantine summary for ..."): it lists senders whose
# messages were not delivered *to the reader*, which is no failure of anything the reader sent.
QUARANTINE_DIGEST_RE = re.compile(r"(?i)\bquarantine (?:summary|digest)\b")
FEEDBACK_SUBJECT_RE = re.compile(r"(?i)\bcomplaint\b|\babuse report|\bspam report|\bfeedback report")
AUTO_REPLY_SUBJECT_RE = re.compile(
    r"(?i)^(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|vacation|abwesen|absence"
    r"|away from|autoreply|réponse automatique|auto:)"
)


def _reverse_path(msg: Message, envelope: EnvelopeFacts | None) -> str | None:
    """The envelope sender ("" for the null one): the envelope's when there is one (a Return-Path field is added
    at final delivery, so a milter sees one only when the sender wrote it), else the Return-Path field's, else
    None (not known)."""
    if envelope is not None:
        return envelope.sender
    field = header(msg, "Return-Path").strip()
    return field.strip("<>") if field else None


def _null_sender(msg: Message, envelope: EnvelopeFacts | None) -> bool:
    """Null reverse path, or a From with the null address ('"Jetmail System" <>'): set by bounces, but by
    RFC 3834 auto-replies too."""
    return _reverse_path(msg, envelope) == "" or header(msg, "From").rstrip().endswith("<>")


def _is_feedback(parsed: Parsed) -> bool:
    msg = parsed.msg
    if content_type(msg) == "multipart/report" and "feedback" in (msg.get_param("report-type") or "").lower():
        return True
    if parsed.of_type("message/feedback-report"):
        return True
    # Provider complaint notices without the ARF part: a complaint subject and the reported message attached.
    return bool(FEEDBACK_SUBJECT_RE.search(header(msg, "Subject"))) and bool(parsed.of_type("message/rfc822"))


def _auto_reply_headers(msg: Message) -> bool:
    auto = header(msg, "Auto-Submitted").lower()
    precedence = header(msg, "Precedence").lower()
    return (
        auto.startswith("auto-replied")
        or bool(msg.get("X-Autoreply") or msg.get("X-Autorespond"))
        or precedence == "auto_reply"
        or bool(AUTO_REPLY_SUBJECT_RE.search(header(msg, "Subject")))
    )


def kind_from_actions(findings: list[Finding]) -> str | None:
    """The kind a delivery-status part states through its Action fields (RFC 3464 §2.3.3)."""
    actions = {(f.action or "").lower() for f in findings}
    if "failed" in actions:
        return "failure"
    if "delayed" in actions:
        return "delay"
    if actions and actions <= {"delivered", "relayed", "expanded", "deliverable"}:
        return "success"
    if any(f.status and f.status[0] in "45" for f in findings):
        return "failure"
    return None


def detect_kind(parsed: Parsed, findings: list[Finding], envelope: EnvelopeFacts | None = None) -> str:
    """The report kind; ``findings`` are the extraction results for this message, ``envelope`` what the MTA
    said about it (None for a bare file)."""
    msg = parsed.msg
    if _is_feedback(parsed):
        return "feedback"
    has_status_part = any(f.action is not None for f in findings)  # only delivery-status fields set it
    if has_status_part:
        stated = kind_from_actions(findings)
        if stated:
            return stated
    body = parsed.report_words
    sender, subject = header(msg, "From"), header(msg, "Subject")
    # A list's refusal of a post, From its own robot (not the reverse path: every list post has the list's bounce
    # address there). List managers mark such notices as auto-replies.
    if is_list_robot(sender):
        if LIST_REFUSAL_RE.search(body):
            return "failure"
        if OWN_MAILBOX_NOTICE_RE.search(body):
            return "none"
    if QUARANTINE_DIGEST_RE.search(subject):
        return "none"
    # A sign of a bounce that auto-replies do not share: a report robot as sender, in From or the reverse path.
    robot = is_bounce_sender(sender) or is_bounce_sender(_reverse_path(msg, envelope) or "")
    auto_reply = not robot and _auto_reply_headers(msg)
    bouncy_subject = bool(BOUNCE_SUBJECT_RE.search(subject))
    # A null sender that is not an auto-reply counts as much as a MAILER-DAEMON From.
    from_bouncer = robot or (_null_sender(msg, envelope) and not auto_reply)
    # A bouncy subject from an ordinary sender ("Error in your invoice") needs report-like text as well.
    signed = from_bouncer or bouncy_subject and bool(REPORT_BODY_RE.search(body))
    if signed and (has_status_part or from_bouncer and bouncy_subject or BOUNCE_BODY_RE.search(body)):
        return "failure" if _permanent(findings) or not DELAY_BODY_RE.search(body) else "delay"
    if auto_reply:
        return "auto-reply"
    if from_bouncer and any(f.status or f.reply_code for f in findings):
        return "failure"
    return "none"


def _permanent(findings: list[Finding]) -> bool:
    return any((f.status or f.reply_code or "")[:1] == "5" for f in findings)
