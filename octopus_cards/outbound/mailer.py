"""E-mail receipts over SMTP (OCTOPUS_SMTP_URL, OCTOPUS_MAIL_FROM): one connection a message."""

import email.message
import email.utils
import smtplib
import urllib.parse

from octopus_cards.models.receipts import MailUnavailable

TIMEOUT = 10  # seconds for the whole conversation with the mail server


class Mailer:
    """`mail(recipient, subject, text)` sends one plain-text message, or raises MailUnavailable."""

    def __init__(self, smtp_url, sender):
        parts = urllib.parse.urlsplit(smtp_url)
        self.secure = parts.scheme == "smtps"
        self.host, self.port = parts.hostname, parts.port or (465 if self.secure else 25)
        self.user = urllib.parse.unquote(parts.username) if parts.username else None
        self.password = urllib.parse.unquote(parts.password or "")
        self.sender = sender

    def __call__(self, recipient, subject, text):
        message = email.message.EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, recipient, subject
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(text)
        connect = smtplib.SMTP_SSL if self.secure else smtplib.SMTP
        try:
            with connect(self.host, self.port, timeout=TIMEOUT) as smtp:
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise MailUnavailable(f"{type(error).__name__}: {error}") from None


def mailer_for(settings):
    """The Mailer of the settings, or None: receipts are then recorded as skipped."""
    return Mailer(settings.smtp_url, settings.mail_from) if settings.smtp_url else None
