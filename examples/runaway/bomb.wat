;; bomb: a memory bomb. It grows its memory 1 MiB at a time; when the Keep's memory limit
;; refuses a step (memory.grow returns -1, as malloc returns NULL), it aborts the way C
;; programs do on a failed allocation: with an `unreachable` trap.
;;
;;   motte run examples/runaway/bomb.wasm --memory 16
;;   -> motte: guest trapped: unreachable instruction executed (the guest aborted); its
;;      memory was nearly full (15.1 of 16 MiB, limits.memory / --memory): ...
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
