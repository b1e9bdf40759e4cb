-- Issue 13, notifications: a dispatcher waiting in LISTEN ioc_notification_outbox hears of new outbox rows at
-- once, instead of finding them at its next poll. Once per statement: a warning queued to many routes wakes it
-- once. The payload is empty: the dispatcher reads what is due anyway.
CREATE FUNCTION notification_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ioc_notification_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER notification_outbox_wake AFTER INSERT ON notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notification_outbox_wake();
