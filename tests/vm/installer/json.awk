# Flattens one JSON document on stdin into `path<TAB>value` lines for busybox sh, e.g.
#   [0].addr_info[1].local	169.254.0.77
# Strings are unescaped naively (\x -> x); enough for the handoff's network files.
BEGIN { RS = "\001" }
{ s = s $0 }
END { n = length(s); pos = 1; value("") }
function skip() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1))) pos++ }
function str(   out, c) {
    pos++; out = ""
    while (pos <= n) {
        c = substr(s, pos, 1)
        if (c == "\\") { out = out substr(s, pos + 1, 1); pos += 2; continue }
        pos++
        if (c == "\"") return out
        out = out c
    }
    return out
}
function value(path,   c, key, i, start) {
    skip(); c = substr(s, pos, 1)
    if (c == "{") {
        pos++; skip()
        if (substr(s, pos, 1) == "}") { pos++; return }
        while (pos <= n) {
            skip(); key = str(); skip(); pos++
            value(path == "" ? key : path "." key)
            skip(); c = substr(s, pos, 1); pos++
            if (c != ",") return
        }
    } else if (c == "[") {
        pos++; skip()
        if (substr(s, pos, 1) == "]") { pos++; return }
        for (i = 0; pos <= n; i++) {
            value(path "[" i "]")
            skip(); c = substr(s, pos, 1); pos++
            if (c != ",") return
        }
    } else if (c == "\"") {
        print path "\t" str()
    } else {
        start = pos
        while (pos <= n && !index(",}] \t\r\n", substr(s, pos, 1))) pos++
        print path "\t" substr(s, start, pos - start)
    }
}
