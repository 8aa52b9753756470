-- Wireshark dissector for dstm (Dual Stack Transition Mechanism).
--
--   * "DSTM": the native protocol, version 1, of docs/protocol.md: host ⇄ server on UDP 4607
--     (DISCOVER … NAK) and server ⇄ TEP on UDP 4608 (BIND, UNBIND, BIND_ACK, SYNC, SNAPSHOT),
--     every option (HOST_IPV4 … BINDING, extension options 0x80–0xFF, AUTH) and status code.
--   * "DHCP4o6": the DHCPv6 messages DHCPV4-QUERY (20) and DHCPV4-RESPONSE (21) of RFC 7341 on
--     UDP 546/547, which Wireshark 4.0 labels "Unknown". Option 87 (OPTION_DHCPV4_MSG) is handed
--     to Wireshark's own DHCP (BOOTP) dissector; option 88 (OPTION_DHCP4_O_DHCP6_SERVER) lists
--     its IPv6 addresses. Every other DHCPv6 message goes to Wireshark's DHCPv6 dissector.
--
-- Use:  tshark -X lua_script:contrib/wireshark/dstm.lua -r capture.pcap
--       or copy this file to ~/.local/lib/wireshark/plugins/ (the .deb installs it in the
--       global plugin folder). Filters: dstm, dstm.type == 7, dstm.status.code, dhcp4o6.
-- Ports: Edit › Preferences › Protocols › DSTM (server and TEP port), or "Decode As".
--
-- What the decoder in lib/wire/dstm.ts refuses, this dissector marks with expert info (group
-- Malformed, severity Error) naming the same decode error code, so `tshark -Y _ws.expert` finds it.

local dstm = Proto("dstm", "DSTM (Dual Stack Transition Mechanism)")

local MESSAGE_TYPES = {
  [1] = "DISCOVER", [2] = "DISCOVER_ACK", [3] = "REQUEST", [4] = "REQUEST_ACK",
  [5] = "RELEASE", [6] = "RELEASE_ACK", [7] = "NAK", [8] = "BIND", [9] = "UNBIND",
  [10] = "BIND_ACK", [11] = "SYNC", [12] = "SNAPSHOT",
}
local OPTION_CODES = {
  [1] = "HOST_IPV4", [2] = "HOST_IPV6", [3] = "TEP_IPV4", [4] = "TEP_IPV6", [5] = "PORT_SET",
  [6] = "LEASE_TIME", [7] = "STATUS", [8] = "AUTH", [9] = "SYNC_STATE", [10] = "SNAPSHOT_PART",
  [11] = "BINDING", [0x80] = "EXISTING_LEASE", [0x81] = "SNAPSHOT_MISSING",
  [0x82] = "GENERATION",
}
local STATUS_CODES = {
  [0] = "SUCCESS", [1] = "POOL_EXHAUSTED", [2] = "NO_SUCH_LEASE", [3] = "NOT_AUTHORISED",
  [4] = "MALFORMED", [5] = "TEP_UNAVAILABLE", [6] = "ADDRESS_IN_USE", [7] = "UNSUPPORTED_VERSION",
  [8] = "SERVER_ERROR",
}
-- Value length of each option; -1: STATUS (2–255); AUTH: at least 52 (see dissect_auth).
local FIXED_LENGTH = { [1] = 4, [2] = 16, [3] = 4, [4] = 16, [5] = 4, [6] = 4, [7] = -1, [8] = 52,
  [9] = 8, [10] = 8, [11] = 24 }
-- Per message type: { required options, allowed options } (docs/protocol.md, "Which options…").
local R, A = 1, 2
local RULES = {
  [1] = { [R] = { 2 }, [A] = { 1, 2, 6, 8 } },
  [2] = { [R] = { 1, 2, 4, 6 }, [A] = { 1, 2, 3, 4, 5, 6, 8 } },
  [3] = { [R] = { 1, 2 }, [A] = { 1, 2, 6, 8 } },
  [4] = { [R] = { 1, 2, 4, 6 }, [A] = { 1, 2, 3, 4, 5, 6, 8 } },
  [5] = { [R] = { 1, 2 }, [A] = { 1, 2, 8 } },
  [6] = { [R] = { 1, 2 }, [A] = { 1, 2, 7, 8 } },
  [7] = { [R] = { 7 }, [A] = { 1, 2, 7, 8 } },
  [8] = { [R] = { 1, 2 }, [A] = { 1, 2, 5, 6, 8 } },
  [9] = { [R] = { 1, 2 }, [A] = { 1, 2, 5, 8 } },
  [10] = { [R] = { 1 }, [A] = { 1, 2, 5, 8 } },
  [11] = { [R] = { 4, 9 }, [A] = { 3, 4, 8, 9 } },
  [12] = { [R] = { 10 }, [A] = { 10, 11, 8 } },
}

local f = {
  version = ProtoField.uint8("dstm.version", "Version", base.DEC),
  type = ProtoField.uint8("dstm.type", "Message type", base.DEC, MESSAGE_TYPES),
  flags = ProtoField.uint16("dstm.flags", "Flags", base.HEX),
  xid = ProtoField.uint32("dstm.xid", "Transaction id", base.HEX),
  length = ProtoField.uint16("dstm.length", "Length", base.DEC),
  reserved = ProtoField.uint16("dstm.reserved", "Reserved", base.HEX),
  option = ProtoField.none("dstm.option", "Option"),
  option_code = ProtoField.uint8("dstm.option.code", "Code", base.DEC, OPTION_CODES),
  option_length = ProtoField.uint8("dstm.option.length", "Length", base.DEC),
  option_value = ProtoField.bytes("dstm.option.value", "Value"),
  host_ipv4 = ProtoField.ipv4("dstm.host_ipv4", "Host IPv4 address"),
  host_ipv6 = ProtoField.ipv6("dstm.host_ipv6", "Host IPv6 address"),
  tep_ipv4 = ProtoField.ipv4("dstm.tep_ipv4", "TEP IPv4 address"),
  tep_ipv6 = ProtoField.ipv6("dstm.tep_ipv6", "TEP IPv6 address"),
  psid_offset = ProtoField.uint8("dstm.port_set.offset", "PSID offset (a)", base.DEC),
  psid_length = ProtoField.uint8("dstm.port_set.psid_length", "PSID length (k)", base.DEC),
  psid_field = ProtoField.uint16("dstm.port_set.psid_field", "PSID field (left-aligned)", base.HEX),
  psid = ProtoField.uint16("dstm.port_set.psid", "PSID", base.DEC),
  lease_time = ProtoField.uint32("dstm.lease_time", "Lease time (s)", base.DEC),
  status_code = ProtoField.uint16("dstm.status.code", "Status code", base.DEC, STATUS_CODES),
  status_text = ProtoField.string("dstm.status.text", "Status text", base.UNICODE),
  auth_key_id = ProtoField.uint32("dstm.auth.key_id", "Key id", base.DEC),
  auth_timestamp = ProtoField.uint64("dstm.auth.timestamp", "Timestamp (ms since the Unix epoch)", base.DEC),
  auth_time = ProtoField.absolute_time("dstm.auth.time", "Timestamp", base.UTC),
  auth_nonce = ProtoField.bytes("dstm.auth.nonce", "Nonce"),
  auth_extra = ProtoField.bytes("dstm.auth.extra", "Fields between nonce and MAC"),
  auth_mac = ProtoField.bytes("dstm.auth.mac", "MAC (HMAC-SHA256)"),
  sync_count = ProtoField.uint32("dstm.sync.count", "Binding count", base.DEC),
  sync_digest = ProtoField.uint32("dstm.sync.digest", "Binding digest", base.HEX),
  snapshot_id = ProtoField.uint32("dstm.snapshot.id", "Snapshot id", base.HEX),
  snapshot_part = ProtoField.uint16("dstm.snapshot.part", "Part", base.DEC),
  snapshot_parts = ProtoField.uint16("dstm.snapshot.parts", "Parts", base.DEC),
  binding_ipv4 = ProtoField.ipv4("dstm.binding.host_ipv4", "Binding host IPv4 address"),
  binding_ipv6 = ProtoField.ipv6("dstm.binding.host_ipv6", "Binding host IPv6 address"),
  trailing = ProtoField.bytes("dstm.trailing", "Bytes after the message length"),
  existing_lease = ProtoField.bool("dstm.existing_lease", "Lease existed before this DISCOVER"),
  missing_id = ProtoField.uint32("dstm.missing.id", "Snapshot id of the missing parts", base.HEX),
  missing_parts = ProtoField.uint16("dstm.missing.parts", "Parts of that snapshot", base.DEC),
  missing_first = ProtoField.uint16("dstm.missing.first", "First missing part", base.DEC),
  missing_last = ProtoField.uint16("dstm.missing.last", "Last missing part", base.DEC),
  generation = ProtoField.uint64("dstm.generation", "Generation (lease version in the shared store, or snapshot cut)", base.DEC),
}
dstm.fields = f

local ef = {
  malformed = ProtoExpert.new("dstm.malformed", "Malformed DSTM message", expert.group.MALFORMED,
    expert.severity.ERROR),
  extension = ProtoExpert.new("dstm.extension", "Extension option (skipped by version 1 receivers)",
    expert.group.UNDECODED, expert.severity.NOTE),
  trailing = ProtoExpert.new("dstm.trailing_bytes", "Bytes after the message length are not read",
    expert.group.PROTOCOL, expert.severity.NOTE),
}
dstm.experts = ef

dstm.prefs.server_port = Pref.uint("Server UDP port", 4607, "Where DSTM servers listen (dstm server --port)")
dstm.prefs.tep_port = Pref.uint("TEP UDP port", 4608, "Where TEPs listen for the server (dstm server --tep-port)")

local function malformed(tree, range, code, text)
  tree:add_proto_expert_info(ef.malformed, code .. ": " .. text)
  return code
end

local function port_set(tree, range)
  local a, k, raw = range(0, 1):uint(), range(1, 1):uint(), range(2, 2):uint()
  tree:add(f.psid_offset, range(0, 1))
  tree:add(f.psid_length, range(1, 1))
  tree:add(f.psid_field, range(2, 2))
  local bad = a > 15 or k > 16 or a + k > 16
  local psid = 0
  if not bad and k > 0 then
    psid = bit32.rshift(raw, 16 - k)
    bad = bit32.band(raw, bit32.lshift(1, 16 - k) - 1) ~= 0
  elseif k == 0 then
    bad = bad or raw ~= 0
  end
  tree:add(f.psid, range(2, 2), psid):set_generated()
  if bad then return nil, string.format("a=%d k=%d field 0x%04x", a, k, raw) end
  return string.format("a=%d k=%d PSID %d", a, k, psid)
end

-- RFC 3629 UTF-8, as the decoder's fatal TextDecoder: no overlongs, surrogates or > U+10FFFF.
local function valid_utf8(range)
  local bytes, i, n = range:bytes(), 0, range:len()
  while i < n do
    local b = bytes:get_index(i)
    local extra, min
    if b < 0x80 then extra, min = 0, 0
    elseif b >= 0xc2 and b <= 0xdf then extra, min = 1, 0x80
    elseif b >= 0xe0 and b <= 0xef then extra, min = 2, 0x800
    elseif b >= 0xf0 and b <= 0xf4 then extra, min = 3, 0x10000
    else return false end
    if i + extra > n - 1 then return false end
    local cp = extra == 0 and b or bit32.band(b, bit32.rshift(0x7f, extra + 1))
    for j = 1, extra do
      local c = bytes:get_index(i + j)
      if bit32.band(c, 0xc0) ~= 0x80 then return false end
      cp = cp * 64 + bit32.band(c, 0x3f)
    end
    if cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff) then return false end
    i = i + 1 + extra
  end
  return true
end

local function v6_usable(range)
  local first = range(0, 1):uint()
  if first == 0xff then return false end
  for i = 0, 15 do if range(i, 1):uint() ~= 0 then return true end end
  return false
end

local function v4_usable(range)
  local v = range:uint()
  return v ~= 0 and v ~= 0xffffffff
end

-- AUTH: keyId (4), timestamp (8), nonce (8), …, mac (32, always last). Fields a later version
-- puts between nonce and MAC show as "extra" rather than as an error.
local function dissect_auth(tree, v)
  tree:add(f.auth_key_id, v(0, 4))
  local ms = v(4, 8):uint64()
  tree:add(f.auth_timestamp, v(4, 8))
  local secs = (ms / 1000):tonumber()
  local nsecs = (ms % 1000):tonumber() * 1000000
  tree:add(f.auth_time, v(4, 8), NSTime.new(secs, nsecs)):set_generated()
  tree:add(f.auth_nonce, v(12, 8))
  if v:len() > 52 then tree:add(f.auth_extra, v(20, v:len() - 52)) end
  tree:add(f.auth_mac, v(v:len() - 32, 32))
  if ms > UInt64.new(0xffffffff, 0x1fffff) then return "bad-auth", "timestamp exceeds 2^53-1 ms" end
  return nil, "key " .. v(0, 4):uint()
end

-- Dissects one option's value; returns an error code and text, or nil and a summary.
local function dissect_value(code, tree, v)
  if code == 1 or code == 3 then
    tree:add(code == 1 and f.host_ipv4 or f.tep_ipv4, v)
    if not v4_usable(v) then return "bad-address", tostring(v:ipv4()) .. " is not unicast" end
    return nil, tostring(v:ipv4())
  elseif code == 2 or code == 4 then
    tree:add(code == 2 and f.host_ipv6 or f.tep_ipv6, v)
    if not v6_usable(v) then return "bad-address", "unspecified or multicast IPv6 address" end
    return nil, tostring(v:ipv6())
  elseif code == 5 then
    local text, err = port_set(tree, v)
    if not text then return "bad-port-set", err end
    return nil, text
  elseif code == 6 then
    tree:add(f.lease_time, v)
    if v:uint() == 0 then return "bad-lease-time", "LEASE_TIME is zero" end
    return nil, v:uint() .. " s"
  elseif code == 7 then
    local status = v(0, 2):uint()
    tree:add(f.status_code, v(0, 2))
    if v:len() > 2 then tree:add(f.status_text, v(2), v(2):string(ENC_UTF_8)) end
    local name = STATUS_CODES[status]
    if not name then return "bad-status", "STATUS code " .. status .. " is unknown" end
    if v:len() > 2 and not valid_utf8(v(2)) then return "bad-text", "STATUS text is not valid UTF-8" end
    return nil, name
  elseif code == 8 then
    return dissect_auth(tree, v)
  elseif code == 9 then
    tree:add(f.sync_count, v(0, 4))
    tree:add(f.sync_digest, v(4, 4))
    return nil, string.format("%d bindings, digest 0x%08x", v(0, 4):uint(), v(4, 4):uint())
  elseif code == 10 then
    tree:add(f.snapshot_id, v(0, 4))
    tree:add(f.snapshot_part, v(4, 2))
    tree:add(f.snapshot_parts, v(6, 2))
    local part, parts = v(4, 2):uint(), v(6, 2):uint()
    return nil, string.format("id 0x%08x part %d of %d", v(0, 4):uint(), part, parts)
  elseif code == 11 then
    tree:add(f.binding_ipv4, v(0, 4))
    tree:add(f.binding_ipv6, v(4, 16))
    local text, err = port_set(tree, v(20, 4))
    if not v4_usable(v(0, 4)) or not v6_usable(v(4, 16)) then
      return "bad-address", "BINDING holds an unusable address"
    end
    if not text then return "bad-port-set", "BINDING " .. err end
    return nil, string.format("%s ⇄ %s %s", tostring(v(0, 4):ipv4()), tostring(v(4, 16):ipv6()), text)
  end
  tree:add(f.option_value, v)
  return nil, v:len() .. " bytes"
end

local function contains(list, code)
  for _, c in ipairs(list) do if c == code then return true end end
  return false
end

-- Header and options of one message; returns the first decode error code (or nil).
local function dissect_message(tvb, pinfo, tree)
  local root = tree:add(dstm, tvb())
  if tvb:len() < 12 then
    return malformed(root, tvb(), "truncated", tvb:len() .. " bytes cannot hold the 12-byte header")
  end
  local version, mtype, length = tvb(0, 1):uint(), tvb(1, 1):uint(), tvb(8, 2):uint()
  root:add(f.version, tvb(0, 1))
  root:add(f.type, tvb(1, 1))
  root:add(f.flags, tvb(2, 2))
  root:add(f.xid, tvb(4, 4))
  root:add(f.length, tvb(8, 2))
  root:add(f.reserved, tvb(10, 2))
  local name = MESSAGE_TYPES[mtype] or ("type " .. mtype)
  pinfo.cols.info:set(string.format("%s xid=0x%08x", name, tvb(4, 4):uint()))
  root:append_text(", " .. name)
  if version ~= 1 then return malformed(root, tvb(0, 1), "bad-version", "version " .. version .. " is not 1") end
  local rule = RULES[mtype]
  if not rule then return malformed(root, tvb(1, 1), "unknown-type", "message type " .. mtype .. " is unknown") end
  if tvb(2, 2):uint() ~= 0 then return malformed(root, tvb(2, 2), "bad-flags", "flags are not zero") end
  if tvb(10, 2):uint() ~= 0 then return malformed(root, tvb(10, 2), "bad-reserved", "reserved field is not zero") end
  if length < 12 then return malformed(root, tvb(8, 2), "bad-length", "length " .. length .. " is below 12") end
  if length > 1232 then return malformed(root, tvb(8, 2), "too-long", "length " .. length .. " exceeds 1232") end
  if length > tvb:len() then
    return malformed(root, tvb(8, 2), "truncated", "length " .. length .. " but only " .. tvb:len() .. " bytes present")
  end
  if tvb:len() > length then
    root:add(f.trailing, tvb(length)):add_proto_expert_info(ef.trailing)
  end
  root:set_len(length)
  local seen, p = {}, 12
  local status, snapshot_part, snapshot_parts
  while p < length do
    if seen[8] then return malformed(root, tvb(p, length - p), "auth-not-last", "option at byte " .. p .. " follows AUTH") end
    if length - p < 2 then return malformed(root, tvb(p, length - p), "truncated-option", "option header at byte " .. p .. " is cut off") end
    local code, len = tvb(p, 1):uint(), tvb(p + 1, 1):uint()
    -- EXISTING_LEASE (0x80) is known in DISCOVER_ACK only, SNAPSHOT_MISSING (0x81) in SYNC
    -- only, GENERATION (0x82) in BIND, UNBIND and SNAPSHOT only; elsewhere they are
    -- extensions, skipped.
    local existing = code == 0x80 and mtype == 2
    local missing = code == 0x81 and mtype == 11
    local generation = code == 0x82 and (mtype == 8 or mtype == 9 or mtype == 12)
    local oname = (code < 0x80 or existing or missing or generation) and OPTION_CODES[code]
      or (code >= 0x80 and "extension " .. code or "unknown " .. code)
    local cut = p + 2 + len > length
    local otree = root:add(f.option, tvb(p, cut and length - p or 2 + len))
    otree:set_text("Option: " .. oname)
    otree:add(f.option_code, tvb(p, 1))
    otree:add(f.option_length, tvb(p + 1, 1))
    if cut then return malformed(otree, tvb(p, length - p), "truncated-option", oname .. ": " .. len .. "-byte value is cut off") end
    local v = len > 0 and tvb(p + 2, len) or tvb(p + 1, 1)
    p = p + 2 + len
    if existing then
      if len ~= 0 then return malformed(otree, tvb(p - 1 - len, 1), "bad-option-length", oname .. " has length " .. len) end
      if seen[code] then return malformed(otree, tvb(p - 2, 1), "duplicate-option", oname .. " appears twice") end
      seen[code] = true
      otree:add(f.existing_lease, tvb(p - 2, 2), true)
      otree:append_text(": the host held this lease before the DISCOVER")
      pinfo.cols.info:append(" EXISTING_LEASE")
    elseif missing then
      if len < 10 or len > 254 or (len - 6) % 4 ~= 0 then
        return malformed(otree, tvb(p - 1 - len, 1), "bad-option-length", oname .. " has length " .. len)
      end
      if seen[code] then return malformed(otree, tvb(p - 2 - len, 1), "duplicate-option", oname .. " appears twice") end
      seen[code] = true
      otree:add(f.missing_id, v(0, 4))
      otree:add(f.missing_parts, v(4, 2))
      local ranges = {}
      for r = 6, len - 4, 4 do
        otree:add(f.missing_first, v(r, 2))
        otree:add(f.missing_last, v(r + 2, 2))
        ranges[#ranges + 1] = v(r, 2):uint() .. "-" .. v(r + 2, 2):uint()
      end
      otree:append_text(": snapshot " .. string.format("0x%08x", v(0, 4):uint()) .. " of "
        .. v(4, 2):uint() .. " parts, missing " .. table.concat(ranges, ","))
      pinfo.cols.info:append(" SNAPSHOT_MISSING")
    elseif generation then
      if len ~= 8 then return malformed(otree, tvb(p - 1 - len, 1), "bad-option-length", oname .. " has length " .. len) end
      if seen[code] then return malformed(otree, tvb(p - 2 - len, 1), "duplicate-option", oname .. " appears twice") end
      if v(0, 4):uint() >= 0x200000 then return malformed(otree, v, "bad-generation", oname .. " is 2^53 or more") end
      seen[code] = true
      otree:add(f.generation, v)
      otree:append_text(": " .. v:uint64():tonumber())
      pinfo.cols.info:append(" gen=" .. v:uint64():tonumber())
    elseif code >= 0x80 then
      if len > 0 then otree:add(f.option_value, v) end
      otree:add_proto_expert_info(ef.extension)
    else
      if not OPTION_CODES[code] then return malformed(otree, tvb(p - 2 - len, 1), "unknown-option", "option code " .. code .. " is unknown") end
      if not contains(rule[A], code) then return malformed(otree, tvb(p - 2 - len, 1), "option-not-allowed", oname .. " is not allowed in " .. name) end
      if seen[code] and code ~= 11 then return malformed(otree, tvb(p - 2 - len, 1), "duplicate-option", oname .. " appears twice") end
      seen[code] = true
      local want = FIXED_LENGTH[code]
      if (want >= 0 and code ~= 8 and len ~= want) or (want < 0 and len < 2) or (code == 8 and len < 52) then
        return malformed(otree, tvb(p - 1 - len, 1), "bad-option-length", oname .. " has length " .. len)
      end
      if code == 7 then status = v(0, 2):uint() end
      if code == 10 then snapshot_part, snapshot_parts = v(4, 2):uint(), v(6, 2):uint() end
      local err, text = dissect_value(code, otree, v)
      if err then return malformed(otree, v, err, text) end
      otree:append_text(": " .. text)
      if code == 1 or code == 7 then pinfo.cols.info:append(" " .. oname .. " " .. text) end
    end
  end
  for _, code in ipairs(rule[R]) do
    if not seen[code] then return malformed(root, tvb(0, length), "missing-option", name .. " requires " .. OPTION_CODES[code]) end
  end
  -- NAK carries a failure; RELEASE_ACK only SUCCESS (docs/protocol.md, STATUS).
  if seen[7] and mtype == 7 and status == 0 then return malformed(root, tvb(0, length), "bad-status", "NAK with STATUS SUCCESS") end
  if seen[7] and mtype == 6 and status ~= 0 then return malformed(root, tvb(0, length), "bad-status", "RELEASE_ACK with a failure") end
  if seen[10] and snapshot_part >= snapshot_parts then
    return malformed(root, tvb(0, length), "bad-snapshot", "SNAPSHOT_PART " .. snapshot_part .. " of " .. snapshot_parts)
  end
  return nil
end

function dstm.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol:set("DSTM")
  dissect_message(tvb, pinfo, tree)
  return tvb:len()
end

-- ---------------------------------------------------------------------------------------------
-- DHCPv4-over-DHCPv6 (RFC 7341): DHCPV4-QUERY / DHCPV4-RESPONSE.

local dhcp4o6 = Proto("dhcp4o6", "DHCPv4-over-DHCPv6 (RFC 7341)")
local DHCP6_TYPES = { [20] = "DHCPV4-QUERY", [21] = "DHCPV4-RESPONSE" }
local DHCP6_OPTIONS = {
  [1] = "Client Identifier", [2] = "Server Identifier", [6] = "Option Request", [8] = "Elapsed Time",
  [87] = "DHCPv4 Message", [88] = "DHCP 4o6 Server Address",
}
local g = {
  msgtype = ProtoField.uint8("dhcp4o6.msgtype", "Message type", base.DEC, DHCP6_TYPES),
  flags = ProtoField.uint24("dhcp4o6.flags", "Flags", base.HEX),
  unicast = ProtoField.bool("dhcp4o6.flags.unicast", "Unicast (U)", 24, nil, 0x800000),
  option = ProtoField.none("dhcp4o6.option", "Option"),
  option_code = ProtoField.uint16("dhcp4o6.option.code", "Option", base.DEC, DHCP6_OPTIONS),
  option_length = ProtoField.uint16("dhcp4o6.option.length", "Length", base.DEC),
  option_value = ProtoField.bytes("dhcp4o6.option.value", "Value"),
  duid_type = ProtoField.uint16("dhcp4o6.duid.type", "DUID type", base.DEC),
  duid = ProtoField.bytes("dhcp4o6.duid", "DUID"),
  server = ProtoField.ipv6("dhcp4o6.server", "DHCP 4o6 server address"),
  oro = ProtoField.uint16("dhcp4o6.oro", "Requested option", base.DEC),
  elapsed = ProtoField.uint16("dhcp4o6.elapsed_time", "Elapsed time (1/100 s)", base.DEC),
}
dhcp4o6.fields = g
local dhcp4o6_malformed = ProtoExpert.new("dhcp4o6.malformed", "Malformed DHCPv4-over-DHCPv6 message",
  expert.group.MALFORMED, expert.severity.ERROR)
dhcp4o6.experts = { dhcp4o6_malformed }

local udp_port = DissectorTable.get("udp.port")
-- Wireshark's own dissectors, kept for everything that is not 4o6.
local dhcpv6_original = udp_port:get_dissector(547) or Dissector.get("dhcpv6")
local dhcp_dissector = Dissector.get("dhcp")

function dhcp4o6.dissector(tvb, pinfo, tree)
  local mtype = tvb:len() >= 1 and tvb(0, 1):uint() or 0
  if not DHCP6_TYPES[mtype] then return dhcpv6_original:call(tvb, pinfo, tree) end
  pinfo.cols.protocol:set("DHCP4o6")
  pinfo.cols.info:set(DHCP6_TYPES[mtype])
  local root = tree:add(dhcp4o6, tvb())
  root:append_text(", " .. DHCP6_TYPES[mtype])
  root:add(g.msgtype, tvb(0, 1))
  if tvb:len() < 4 then
    root:add_proto_expert_info(dhcp4o6_malformed, "message shorter than its 4-byte header")
    return tvb:len()
  end
  local ftree = root:add(g.flags, tvb(1, 3))
  ftree:add(g.unicast, tvb(1, 3))
  local p = 4
  local dhcp_tvbs = {}
  while p < tvb:len() do
    if tvb:len() - p < 4 then
      root:add_proto_expert_info(dhcp4o6_malformed, "option header at byte " .. p .. " is cut off")
      break
    end
    local code, len = tvb(p, 2):uint(), tvb(p + 2, 2):uint()
    if p + 4 + len > tvb:len() then
      root:add_proto_expert_info(dhcp4o6_malformed, "option " .. code .. ": value is cut off")
      break
    end
    local otree = root:add(g.option, tvb(p, 4 + len))
    otree:set_text("Option: " .. (DHCP6_OPTIONS[code] or "unknown") .. " (" .. code .. ")")
    otree:add(g.option_code, tvb(p, 2))
    otree:add(g.option_length, tvb(p + 2, 2))
    local v = len > 0 and tvb(p + 4, len) or nil
    if code == 87 and v then
      table.insert(dhcp_tvbs, v:tvb())
      otree:append_text(": " .. len .. " bytes (dissected as DHCP below)")
    elseif (code == 1 or code == 2) and v and len >= 2 then
      otree:add(g.duid_type, v(0, 2))
      otree:add(g.duid, v)
    elseif code == 88 then
      if len % 16 ~= 0 then
        otree:add_proto_expert_info(dhcp4o6_malformed, "length " .. len .. " is not a multiple of 16")
      else
        for i = 0, len / 16 - 1 do otree:add(g.server, v(i * 16, 16)) end
      end
    elseif code == 6 and v then
      for i = 0, len / 2 - 1 do otree:add(g.oro, v(i * 2, 2)) end
    elseif code == 8 and v and len == 2 then
      otree:add(g.elapsed, v)
    elseif v then
      otree:add(g.option_value, v)
    end
    p = p + 4 + len
  end
  for _, inner in ipairs(dhcp_tvbs) do dhcp_dissector:call(inner, pinfo, tree) end
  return tvb:len()
end

local registered = {}
local function register_ports()
  for port, proto in pairs(registered) do udp_port:remove(port, proto) end
  registered = { [dstm.prefs.server_port] = dstm, [dstm.prefs.tep_port] = dstm }
  for port, proto in pairs(registered) do udp_port:add(port, proto) end
end
dstm.prefs_changed = register_ports
register_ports()
udp_port:add(546, dhcp4o6)
udp_port:add(547, dhcp4o6)
