"""TwiML answers, built with the standard library's XML tools so every text and attribute is escaped.

A line's answer never contains anything the caller sent: it is built once per line at startup.
"""

from xml.etree.ElementTree import Element, SubElement, tostring

from services.channels.phone.account import PhoneLine

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
TWIML_MEDIA_TYPE = "text/xml"


def enqueue_twiml(line: PhoneLine) -> bytes:
    """``<Response>[<Say>greeting</Say>]<Enqueue [waitUrl]>queue</Enqueue></Response>`` for ``line``."""
    response = Element("Response")
    if line.greeting:
        say = SubElement(response, "Say", {"language": line.greeting_language})
        if line.greeting_voice:
            say.set("voice", line.greeting_voice)
        say.text = line.greeting
    enqueue = SubElement(response, "Enqueue")
    if line.wait_url:
        enqueue.set("waitUrl", line.wait_url)
    enqueue.text = line.queue
    body: bytes = tostring(response, encoding="utf-8", xml_declaration=False)
    return XML_DECLARATION + body
