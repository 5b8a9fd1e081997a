# JSON for the demo without jq or Python: any awk (mawk, gawk, busybox) will do.
#   awk -f demo/json.awk -v mode=pretty < file.json   # indented, two spaces
#   awk -f demo/json.awk -v mode=flat   < file.json   # one `path<TAB>value` line per scalar:
#                                                     # servers.demo.status<TAB>"ready"
# It trusts its input to be valid JSON (the proxy and the harness write it); strings keep their
# escapes as written.
{ text = text $0 "\n" }

function pad(n,   s) { s = ""; while (n-- > 0) s = s "  "; return s }
function path(   p, k) {
  p = ""
  for (k = 1; k <= depth; k++) p = p (k > 1 ? "." : "") key[k]
  return p
}
# A scalar (or an empty container) was read at the current path.
function scalar(v) {
  if (mode == "flat") print path() "\t" v
  else out = out v
}

END {
  n = length(text); depth = 0; out = ""
  for (i = 1; i <= n; i++) {
    c = substr(text, i, 1)
    if (c == " " || c == "\t" || c == "\n" || c == "\r") continue
    if (c == "\"") {
      # Read the whole string, escapes included.
      j = i + 1
      while (j <= n) {
        d = substr(text, j, 1)
        if (d == "\\") { j += 2; continue }
        if (d == "\"") break
        j++
      }
      s = substr(text, i, j - i + 1); i = j
      if (depth > 0 && kind[depth] == "o" && want_key[depth]) {
        key[depth] = substr(s, 2, length(s) - 2); want_key[depth] = 0
        if (mode != "flat") out = out s
      } else scalar(s)
      continue
    }
    if (c == ":") { if (mode != "flat") out = out ": "; continue }
    if (c == ",") {
      if (kind[depth] == "a") key[depth]++
      else want_key[depth] = 1
      if (mode != "flat") out = out ",\n" pad(depth)
      continue
    }
    if (c == "{" || c == "[") {
      # Skip blanks to see whether the container is empty.
      j = i + 1
      while (substr(text, j, 1) ~ /[ \t\n\r]/) j++
      e = substr(text, j, 1)
      if ((c == "{" && e == "}") || (c == "[" && e == "]")) { scalar(c e); i = j; continue }
      depth++; kind[depth] = (c == "{") ? "o" : "a"
      key[depth] = (c == "{") ? "" : 0; want_key[depth] = (c == "{")
      if (mode != "flat") out = out c "\n" pad(depth)
      continue
    }
    if (c == "}" || c == "]") {
      depth--
      if (mode != "flat") out = out "\n" pad(depth) c
      continue
    }
    # A number or a literal: up to the next delimiter.
    j = i
    while (j <= n && substr(text, j, 1) !~ /[,}\] \t\n\r]/) j++
    scalar(substr(text, i, j - i)); i = j - 1
  }
  if (mode != "flat") print out
}
