"""E-mail receipts: an order that asked for one (voucher `email`, top-up and eSIM
`notification_email`) gets a plain receipt when it reaches a terminal status. It is queued in the
transaction of that status change and sent by the background workers like a webhook delivery,
retried on the same schedule; with no SMTP server configured it is recorded as skipped."""

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from octopus_cards.models.base import BaseModel, db, utcnow, write_txn
from octopus_cards.models.clients import Client
from octopus_cards.models.jobs import Job

PENDING, SENT, SKIPPED, FAILED = "pending", "sent", "skipped", "failed"
JOB_KIND = "receipt"


class MailUnavailable(Exception):
    """The mail server could not take the message now; worth another try."""


class Receipt(BaseModel):
    vertical = CharField()  # vouchers, topups, esim
    order_id = IntegerField()
    client = ForeignKeyField(Client, on_delete="CASCADE")
    recipient = CharField(max_length=254)
    subject = CharField()
    text = TextField()
    status = CharField()
    attempts = IntegerField(default=0)
    last_error = CharField(null=True)
    sent_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("vertical", "order_id"), True),)

    @classmethod
    def queue(cls, vertical, order_id, client_id, recipient, subject, text):
        """Queue the receipt of an order; call inside the transaction of its final status."""
        receipt = cls.create(vertical=vertical, order_id=order_id, client=client_id, recipient=recipient,
                             subject=subject, text=text, status=PENDING)  # fmt: skip
        Job.enqueue(JOB_KIND, receipt.id)
        return receipt

    def moved(self, **fields):
        with write_txn():
            Receipt.update(**fields).where(Receipt.id == self.id).execute()


def send(job, mail, retry_schedule):
    """Run a receipt job once: hand the receipt to `mail(recipient, subject, text)`, or record it
    skipped when there is no mail server (`mail` None); the receipt's status after it. No database
    connection is held while the mail server takes its time."""
    with db.connection_context():
        receipt = Receipt.get_or_none(Receipt.id == job.subject_id)
        if receipt is None or receipt.status != PENDING:
            job.finish()
            return None
        if mail is None:
            receipt.moved(status=SKIPPED)
            job.finish()
            return SKIPPED
    attempts = receipt.attempts + 1
    try:
        mail(receipt.recipient, receipt.subject, receipt.text)
    except MailUnavailable as error:
        with db.connection_context():
            if attempts > len(retry_schedule):
                receipt.moved(status=FAILED, attempts=attempts, last_error=str(error))
                job.finish()
                return FAILED
            receipt.moved(attempts=attempts, last_error=str(error))
            job.retry_after(retry_schedule[attempts - 1], str(error))
        return PENDING
    with db.connection_context():
        receipt.moved(status=SENT, attempts=attempts, last_error=None, sent_at=utcnow())
        job.finish()
    return SENT


def voucher_receipt(order, status, delivered):
    """Subject and text of the receipt of a voucher order that ended `status` with `delivered`
    codes: what happened, never a code."""
    subject = f"Octopus Cards order #{order.id}: {status.replace('_', ' ').lower()}"
    reference = f" (your reference {order.client_reference})" if order.client_reference else ""
    lines = [
        f"Order #{order.id}{reference} for {order.quantity} x {order.product_name} is {status}.",
        f"Codes delivered: {delivered} of {order.quantity}.",
    ]
    if delivered < order.quantity:
        lines.append("The undelivered part has been refunded to your wallet.")
    if delivered:
        lines.append(f"For security the codes are not in this e-mail: fetch them with GET /api/v1/orders/{order.id}.")
    return subject, "\n".join(lines) + "\n"


def topup_receipt(order, status):
    """Subject and text of the receipt of a top-up order that ended `status`."""
    subject = f"Octopus Cards top-up order #{order.id}: {status.lower()}"
    reference = f" (your reference {order.client_reference})" if order.client_reference else ""
    lines = [f"Top-up order #{order.id}{reference}, {order.variant_name} of {order.product_name}, is {status}."]
    if status == "FAILED" and order.failure_reason:
        lines.append(f"Reason: {order.failure_reason}.")
    if status != "DELIVERED":
        lines.append("The full amount has been refunded to your wallet.")
    lines.append(f"Details: GET /api/v1/topups/orders/{order.id}.")
    return subject, "\n".join(lines) + "\n"


def esim_receipt(order, status):
    """Subject and text of the receipt of an eSIM order that ended `status`: never its activation
    code."""
    subject = f"Octopus Cards eSIM order #{order.id}: {status.lower()}"
    reference = f" (your reference {order.client_reference})" if order.client_reference else ""
    lines = [f"eSIM order #{order.id}{reference}, {order.product_name}, is {status}."]
    if status == "FAILED" and order.failure_reason:
        lines.append(f"Reason: {order.failure_reason}.")
    if status == "DELIVERED":
        lines.append(
            f"For security the activation code is not in this e-mail: fetch it with GET /api/v1/esim/orders/{order.id}."
        )
    else:
        lines.append("The full amount has been refunded to your wallet.")
    return subject, "\n".join(lines) + "\n"
