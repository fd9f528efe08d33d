"""The dashboard: a full-screen Textual view of running models, registrations, machine resources and a live
chat pane. All server traffic goes through `xitui.client`, in worker threads; nothing below imports textual."""
