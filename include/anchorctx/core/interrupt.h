// Ctrl-C and `kill` as a request to stop cleanly. The first SIGINT or SIGTERM only sets a flag,
// which long loops poll where stopping leaves nothing half written: throw_if_interrupted throws
// an Error that unwinds through the AtomicDir and temporary-file guards, so their temporaries
// are removed (a signal's default action left hidden `.tmp-` folders behind). A second signal
// gets the default action at once, for a loop that does not come back to a polling point soon;
// one within 250 ms of the first is the same request delivered twice (GNU timeout signals the
// child, then its process group) and changes nothing.
#pragma once

#include <string>
#include <string_view>

namespace anchorctx::core {

// Installs the handlers. The CLI's commands that write over a long time and poll (pack, train,
// demo, study) install them before any work; the others, and a library caller that does not,
// keep the signals' default actions (nothing of theirs is written before the end), and
// interrupt_signal() stays 0.
void install_interrupt_handlers();

// The signal that asked to stop (SIGINT, SIGTERM), or 0.
int interrupt_signal();
// "SIGINT", "SIGTERM" or "signal N".
std::string signal_name(int sig);

// Throws anchorctx::Error "interrupted (SIGINT) <where>" when a stop was asked for.
void throw_if_interrupted(std::string_view where);

}  // namespace anchorctx::core
