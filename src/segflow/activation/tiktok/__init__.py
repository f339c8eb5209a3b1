"""TikTok custom audiences (Business API v1.3 "customer file" audiences), over ``httpx``.

What TikTok wants and how segflow gives it, module by module:

* :mod:`.normalise`: emails and phones as TikTok's customer-file rules ask,
  SHA-256 in lower hex, as identifier codes (``e:<hash>``, ``p:<hash>``).
* :mod:`.client`: :class:`~.client.TikTokClient`, the five custom-audience
  calls (file upload, create, update, get, list) and TikTok's answer codes
  turned into segflow's failure kinds.
* :mod:`.sender`: :class:`~.sender.TikTokSender`, a
  :class:`~segflow.activation.transport.Sender` that uploads a batch's hashes
  as a file and appends it to (or removes it from) the audience.
* :mod:`.config`: :func:`~.config.tiktok_config`, a destination's settings.

An audience holds one kind of identifier: TikTok's create and update calls
take only files of the audience's own ``calculate_type`` (see
:mod:`.config`), so a destination sends emails or phones, not both.
"""
