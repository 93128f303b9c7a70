;; spin: a runaway guest. It loops forever without ever calling the host, so only the
;; Keep's CPU-time limit (an epoch deadline checked at the loop's back-edge) can stop it.
;;
;;   motte run examples/runaway        -> motte: guest stopped: CPU time limit reached: 1 s
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
