package testsvc

import "testing"

func TestRestartableRedisComesBackOnTheSameAddress(t *testing.T) {
	t.Parallel()
	s := RestartableRedis(t)
	if err := pingRedis(s.Addr); err != nil {
		t.Fatalf("PING after start: %v", err)
	}
	s.Stop()
	s.Stop() // twice is fine
	if err := pingRedis(s.Addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Start()
	if err := pingRedis(s.Addr); err != nil {
		t.Fatalf("PING after restart on %s: %v", s.Addr, err)
	}
}
