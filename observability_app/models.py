"""Models of the app; each lives in the module of its concern and is collected here for Django."""

from .audit.models import AuditEvent, AuditPurgeRecord, AuditSeal, AuditVerification, LegalHold, LegalHoldRelease

__all__ = ["AuditEvent", "AuditPurgeRecord", "AuditSeal", "AuditVerification", "LegalHold", "LegalHoldRelease"]
